from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from training.serving import register_servings
        from training.tasks import resume_when_a_worker_starts

        # The registry loads open-weights adapters before they take traffic, and tells agents
        # where each provider's models answer.
        register_servings()

        # Each django-q2 worker, as it starts (a cluster starting, or a worker replacing a dead one),
        # re-delivers the runs whose task was lost, rather than waiting for the next resume tick.
        post_spawn.connect(resume_when_a_worker_starts, dispatch_uid="training-resume-on-worker-start")
