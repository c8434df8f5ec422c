"""Operating firth: run records, the table lock, each run's scratch space and watchdog, job submission, schedules and reports."""
