-- The memory a worker's model holds, as the in-process engine reports it
-- for its own models: the bytes of its weights (tensor bytes) and the cells
-- of its KV cache over all slots. Both are fixed when the worker loads the
-- model, so the worker writes them when it registers the model. NULL: the
-- row's worker did not report them.
ALTER TABLE engine_worker_model
    ADD COLUMN weights_bytes bigint,
    ADD COLUMN kv_cells integer;
