from django.conf import settings


def test_it_loads_settings_with_the_test_secret() -> None:
    assert settings.SECRET_KEY.startswith("test-only")
