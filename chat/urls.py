from django.urls import path

from . import views

app_name = "chat"
urlpatterns = [
    path("", views.index, name="index"),
    path("room/<str:room>/", views.room, name="room"),
    path("try/", views.try_seed, name="try"),
]
