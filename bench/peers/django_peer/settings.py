"""Minimal Django project around django-s3-file-upload (PyPI), as its README
sets it up: the app's URLs, DRF, an SQLite database. Env: DJANGO_DB (path),
S3_BUCKET; AWS_ENDPOINT_URL_S3 and AWS_CONFIG_FILE (s3v4, path-style) are read
by boto3 itself, since the package creates its client with boto3.client('s3')."""
import os

SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "s3_file_uploads",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "django_peer.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("DJANGO_DB", "/tmp/django-peer.db")}}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
AWS_BUCKET_NAME = os.environ.get("S3_BUCKET", "test-bucket")
MAX_FILE_UPLOAD_SIZE = 100 * 1024 * 1024
REST_FRAMEWORK = {"DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"]}
