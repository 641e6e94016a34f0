# Login shells (`docker exec -it C bash -l`, `su - hermes`): the application's
# PATH, which Debian's /etc/profile has just reset. The runtime user's own tool
# directory comes first, for that user only: root's PATH never holds a
# directory the runtime user can write.
case ":$PATH:" in
  *:/opt/hermes/.venv/bin:*) ;;
  *) PATH="/opt/hermes/bin:/opt/hermes/.venv/bin:$PATH" ;;
esac
if [ "$(id -u)" != 0 ]; then
  case ":$PATH:" in
    *:/opt/data/.local/bin:*) ;;
    *) PATH="/opt/data/.local/bin:$PATH" ;;
  esac
fi
export PATH
