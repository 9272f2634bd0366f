DROP TABLE IF EXISTS generation_truth_match;
