"""Operating firth: run records, the table lock, job submission, schedules and reports."""
