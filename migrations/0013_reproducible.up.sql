-- What a generation needs, beyond its sampler, seed and template version,
-- to be re-run and to be compared across builds and studies.
--
-- The model file's sha256 is not repeated here: a model row's file_sha256
-- never changes (a new file under the same name is a new row), so
-- generation.model_id already names the exact weights. The study arm is
-- not repeated either: it is (meta_query.study_id, meta_query.config_id),
-- a study_arm row whenever study_id is set. The context files used, in
-- prompt order, are the query's query_context_file rows.
--
-- engine_build: the code4me version and the llama.cpp build and CPU
--   features that ran the model (numerics can differ between them).
-- context_policy: how the multi-file context was chosen: 'none' (no files
--   asked for), 'files:all-but-current' (every project file but the current
--   one) or 'files:named' (the files the request named, in its order).
-- trigger: what started the request: 'typed' (the editor asked while the
--   user typed or paused), 'explicit' (the user asked), 'warm-up' (a request
--   made only to fill the cache); NULL when not known or not consented to
--   (it is part of the contextual telemetry).
ALTER TABLE generation
    ADD COLUMN engine_build   text,
    ADD COLUMN context_policy text,
    ADD COLUMN trigger        text,
    ADD CONSTRAINT generation_context_policy CHECK (context_policy IN ('none', 'files:all-but-current', 'files:named')),
    ADD CONSTRAINT generation_trigger CHECK (trigger IN ('typed', 'explicit', 'warm-up'));
