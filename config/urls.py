"""URL map. Every page needs a login (LoginRequiredMiddleware) and a role (jails.access.roles); the login
page itself (and the icon) is public."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.http import require_safe
from django.views.generic.base import RedirectView

from jails.access.logins import PanelAuthenticationForm

urlpatterns = [
    # the login form says when a client is throttled (jails/access/logins.py)
    path("accounts/login/", auth_views.LoginView.as_view(
        authentication_form=PanelAuthenticationForm, redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # browsers and tools ask for /favicon.ico whatever the page links: send them to the icon, no login
    path("favicon.ico", login_not_required(require_safe(RedirectView.as_view(url=static("favicon.svg"),
                                                                          permanent=True))), name="favicon"),
    path("", include("bans.urls")),
    path("", include("jails.urls")),
    path("", include("watchers.urls")),
]
