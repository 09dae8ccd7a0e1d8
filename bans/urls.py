"""URLs of the bans app (names are the contract base.html and the other apps link to)."""

from django.urls import path

from bans import views, views_bans, views_failures, views_replay

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("dashboard/data/", views.dashboard_data, name="dashboard_data"),
    path("failures/", views_failures.failure_list, name="failure_list"),
    path("bans/", views_bans.ban_list, name="ban_list"),
    path("bans/new/", views_bans.ban_create, name="ban_create"),
    path("bans/unban/", views_bans.ban_unban_selected, name="ban_unban_selected"),
    path("bans/export.<str:fmt>", views_bans.ban_export, name="ban_export"),
    path("bans/<int:pk>/", views_bans.ban_detail, name="ban_detail"),
    path("bans/<int:pk>/unban/", views_bans.ban_unban, name="ban_unban"),
    path("bans/<int:pk>/permanent/", views_bans.ban_make_permanent, name="ban_make_permanent"),
    path("bans/lift-all/<str:jail_name>/", views_bans.jail_lift_all, name="jail_lift_all"),
    path("replay/", views_replay.replay_start, name="replay_start"),
    path("replay/<int:pk>/", views_replay.replay_detail, name="replay_detail"),
]
