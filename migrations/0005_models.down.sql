DROP TABLE model;
