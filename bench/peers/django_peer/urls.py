from django.urls import include, path

urlpatterns = [path("api/v1/uploads/", include("s3_file_uploads.urls"))]
