"""BPF programs (C, one file per attach point + shared header) and their bcc loader."""
