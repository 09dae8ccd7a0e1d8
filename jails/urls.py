"""URLs of the jails app. The "jails & filters" pages are here; the "access & look" helper adds its
own lines (audit, users) in the one marked block below and nowhere else."""

from django.urls import path

from jails import views, views_filters, views_ignore, views_import, views_tester
from jails.access import views as views_access

urlpatterns = [
    # --- jails & filters ---
    path("jails/", views.jail_list, name="jail_list"),
    path("jails/new/", views.jail_create, name="jail_create"),
    path("jails/ignore/", views_ignore.global_ignore, name="global_ignore"),
    path("jails/ignore/add/", views_ignore.global_ignore_add, name="global_ignore_add"),
    path("jails/ignore/remove/", views_ignore.global_ignore_remove, name="global_ignore_remove"),
    path("jails/<str:name>/", views.jail_detail, name="jail_detail"),
    path("jails/<str:name>/edit/", views.jail_edit, name="jail_edit"),
    path("jails/<str:name>/toggle/", views.jail_toggle, name="jail_toggle"),
    path("jails/<str:name>/ignore/", views_ignore.jail_ignore, name="jail_ignore"),
    path("filters/", views_filters.filter_list, name="filter_list"),
    path("filters/new/", views_filters.filter_create, name="filter_create"),
    path("filters/import/", views_filters.filter_import, name="filter_import"),
    path("filters/test/", views_tester.filter_tester, name="filter_tester"),
    path("filters/<str:name>/", views_filters.filter_detail, name="filter_detail"),
    path("filters/<str:name>/edit/", views_filters.filter_edit, name="filter_edit"),
    path("filters/<str:name>/test/", views_tester.filter_tester, name="filter_tester_for"),
    path("import/", views_import.import_config, name="import_config"),
    path("import/apply/", views_import.import_apply, name="import_apply"),
    # --- access & look ---
    path("audit/", views_access.audit_list, name="audit_list"),
    path("users/", views_access.user_list, name="user_list"),
    path("users/new/", views_access.user_create, name="user_create"),
    path("users/<int:pk>/role/", views_access.user_role, name="user_role"),
    path("users/<int:pk>/active/", views_access.user_active, name="user_active"),
    # --- end access & look ---
]
