"""The pipeline: corpus, statistics, the job, operations and the command line."""
