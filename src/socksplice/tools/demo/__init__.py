"""``socksplice demo``: the embedded default, local mode end to end with a side-by-side benchmark."""
