ALTER TABLE generation
    DROP COLUMN trigger,
    DROP COLUMN context_policy,
    DROP COLUMN engine_build;
