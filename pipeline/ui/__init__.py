"""The web page (Gradio): a thin door onto the same ``Pipeline`` the REST API serves.

Nothing here is imported with the package: Gradio loads only when a page is built.
"""
