from django.db import models


class Signup(models.Model):
    email = models.CharField(max_length=100)
    welcomed = models.BooleanField(default=False)

    class Meta:
        app_label = "djangoapp"
