from django.urls import path

from jails import views

urlpatterns = [
    path("", views.home, name="home"),
]
