"""statefulwebapp: a kopf operator that turns one StatefulWebApp into a stateful web stack."""
