"""Teacher feature cache (stage 2): hidden states stored with lhotse's array storage."""
