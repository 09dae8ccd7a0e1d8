"""Dates as the panel's pages write them (2026-12-03 13:55), also where a template or Django admin
prints a date without a format: Django's "en" formats (Dec. 3, 2026, 1:55 p.m.) win over
settings.DATETIME_FORMAT, so they are replaced here."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
MONTH_DAY_FORMAT = "F j"
YEAR_MONTH_FORMAT = "F Y"
