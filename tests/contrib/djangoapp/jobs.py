"""The job module: importing it before django.setup() raises AppRegistryNotReady."""

from supervisor_q import job
from tests.contrib.djangoapp.models import Signup


@job(name="tests.django.welcome", queue="django")
def send_welcome(signup_id: int) -> None:
    Signup.objects.filter(id=signup_id).update(welcomed=True)
