"""``cloud-hub calibrate``: success heads and thresholds fitted on the tiers this deployment serves.

``collect`` serves training items through the live system, one pinned pass per live tier, and
writes the graded answers as a RouterBench-schema CSV; ``join`` adds the replayed tiers' recorded
outcomes; ``fit`` trains the success head, measures it out of fold and calibrates the threshold
table with the real per-tier costs.
"""
