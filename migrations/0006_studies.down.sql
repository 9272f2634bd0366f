DROP TABLE config_assignment_history;
DROP TABLE study_arm;
DROP TABLE study;
