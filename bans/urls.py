from django.urls import path

from bans import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("bans/", views.ban_list, name="ban_list"),
]
