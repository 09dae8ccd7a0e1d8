"""WSGI entry point for gunicorn."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
# runstack starts gunicorn with --preload: this module is imported once, in the master, and the
# workers are forked from it. Freezing what is loaded now keeps the cyclic collector from writing
# to those objects in the workers, so their pages stay shared (copy-on-write) instead of copied.
gc.freeze()
