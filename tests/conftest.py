# tests/fuzz/ holds atheris harnesses (run by hand, not by pytest): see tests/fuzz/fuzz_decoder.py.
collect_ignore_glob = ["fuzz/*"]
