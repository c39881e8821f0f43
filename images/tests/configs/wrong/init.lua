-- A configuration that must NOT be picked when moonlit.config= names another.
print("wrong-config: this is /etc/moonlit")
moonlit.poweroff()
