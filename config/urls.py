"""URL map. Every page needs a login (LoginRequiredMiddleware) and a role (jails.access.roles); the login
page itself is public."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from jails.access.logins import PanelAuthenticationForm

urlpatterns = [
    # the login form says when a client is throttled (jails/access/logins.py)
    path("accounts/login/", auth_views.LoginView.as_view(
        authentication_form=PanelAuthenticationForm, redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("bans.urls")),
    path("", include("jails.urls")),
]
