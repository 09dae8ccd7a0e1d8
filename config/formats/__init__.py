"""The panel's date formats (FORMAT_MODULE_PATH): one way of writing times everywhere."""
