"""``swe-lite-files``: SWE-bench Lite issue -> the files to edit (see evals/README.md)."""
