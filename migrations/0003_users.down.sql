DROP TABLE session;
DROP TABLE api_key;
DROP TABLE users;
