DROP TABLE eval_result;
DROP TABLE eval_run;
