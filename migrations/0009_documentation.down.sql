DROP TABLE documentation;
