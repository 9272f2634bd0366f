DROP TABLE engine_worker_model;
DROP TABLE engine_worker;
