"""The REST API (``vlsearch serve``): a thin door onto one ``Pipeline``."""
