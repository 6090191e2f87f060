"""The audit log: one record per refusal, hash-chained, with an fsync policy; its reader and in-memory sink."""
