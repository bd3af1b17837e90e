"""DAgger itself: the beta schedule, the replay buffer and its storages, rollouts and evaluation, the learner, the
sync runner and the run's state (progress, checkpoint, evaluation). Reads and writes through `io`."""
