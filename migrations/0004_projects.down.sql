DROP TABLE project_context_change;
DROP TABLE project_context_file;
DROP TABLE session_project;
DROP TABLE project_users;
DROP TABLE project;
