"""Access to the panel: who someone is and what they may do, and the record of what they did.

- `roles.py`: the three roles (viewer, operator, admin) as groups, and `role_required` for views;
- `logins.py`: the authentication backend that throttles failed logins and logs each one for the
  built-in `panel` filter;
- `client.py`: the client's address (REMOTE_ADDR, or X-Forwarded-For behind trusted proxies);
- `sessions.py`: the address of every live panel session, which no ban may cover;
- `audit.py`: the audit trail and the `Actor` that services record changes under;
- `views.py`, `forms.py`: the audit log and users pages (templates/access/).

The models (AuditEntry, PanelSession) stay in jails/models.py, with their migrations.
"""
