"""Forms of the audit and users pages (jails/access/views.py)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User

from jails.access.roles import Role
from jails.models import AuditEntry

ROLE_CHOICES = [(role.group_name, role.group_name) for role in Role]
ROLE_HELP = ("viewer: reads everything. operator: also bans, unbans and edits ignore lists. "
             "admin: also edits jails, filters and users, and imports configurations.")


class AuditFilterForm(forms.Form):
    """The audit page's filters, read from the query string (every one optional)."""

    q = forms.CharField(label="Text", required=False, max_length=200,
                        help_text="Searched in the object, the values before and after, the user and the address.")
    user = forms.CharField(label="User", required=False, max_length=150)
    action = forms.ChoiceField(label="Action", required=False)
    object_type = forms.ChoiceField(label="Object type", required=False)
    via = forms.ChoiceField(label="Through", required=False, choices=[
        ("", "any"), ("panel", "panel"), ("admin", "Django admin"), ("cli", "command line"), ("system", "system")])
    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}),
                            help_text="Inclusive.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the choices are what the trail holds, so a filter never offers something that finds nothing
        actions = AuditEntry.objects.order_by("action").values_list("action", flat=True).distinct()
        types = AuditEntry.objects.order_by("object_type").values_list("object_type", flat=True).distinct()
        action_field = self.fields["action"]
        type_field = self.fields["object_type"]
        assert isinstance(action_field, forms.ChoiceField)  # noqa: S101  # type narrowing: declared above
        assert isinstance(type_field, forms.ChoiceField)  # noqa: S101  # type narrowing: declared above
        action_field.choices = [("", "any"), *((a, a) for a in actions)]
        type_field.choices = [("", "any"), *((t, t) for t in types if t)]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return data


class UserCreateForm(UserCreationForm[User]):
    """A new panel user: name, password (checked by AUTH_PASSWORD_VALIDATORS) and role."""

    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.VIEWER.group_name, help_text=ROLE_HELP)

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES, help_text=ROLE_HELP)


class ActiveForm(forms.Form):
    active = forms.TypedChoiceField(choices=[("1", "active"), ("0", "inactive")], coerce=lambda v: v == "1")
