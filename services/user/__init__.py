"""User service: profiles and preferences of the signed-in user."""
