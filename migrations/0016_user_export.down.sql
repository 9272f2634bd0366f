DROP TABLE user_export;
