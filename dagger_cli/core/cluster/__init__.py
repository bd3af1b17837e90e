"""What runs on Ray: the local or remote cluster, the async runner with its rollout workers, the data-parallel
learner. Built from the engine's parts."""
