"""The main job: hub + agent on embedded defaults, a representative workload, the north-star report."""
