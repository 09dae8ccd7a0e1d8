"""URLs of the watchers app: the fleet's Hosts page."""

from django.urls import path

from watchers import views

urlpatterns = [
    path("hosts/", views.host_list, name="host_list"),
]
