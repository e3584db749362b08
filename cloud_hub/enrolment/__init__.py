"""Enrolling edges without copying key files: invites, the enrolment socket, the allow-list."""
