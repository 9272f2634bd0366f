DROP TABLE config;
DROP TABLE plugin_version;
DROP TABLE trigger_type;
DROP TABLE programming_language;
