"""The command line: `firth run`, `firth tables …`, `firth neighbors`, and the operations commands."""
