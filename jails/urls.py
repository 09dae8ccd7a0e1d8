from django.urls import path

from jails import views

urlpatterns = [
    path("jails/", views.jail_list, name="jail_list"),
    path("filters/", views.filter_list, name="filter_list"),
    path("import/", views.import_config, name="import_config"),
    path("audit/", views.audit_list, name="audit_list"),
]
