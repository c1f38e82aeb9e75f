<?php
// One "web request" of a PHP site: opens the session SID through whatever session.save_handler
// and session.save_path the caller set with -d, optionally writes key=value pairs into $_SESSION,
// and prints the session as JSON on one line.
//   php -d session.save_handler=... -d session.save_path=... session.php SID [key=value ...]
//   php ... session.php --hold SID key=value   (prints "locked" once the session is open, then
//                                               waits for a line on stdin before writing it back)
$args = array_slice($argv, 1);
$hold = false;
if ($args && $args[0] === '--hold') {
    $hold = true;
    array_shift($args);
}
$sid = array_shift($args);
session_id($sid);
if (!@session_start()) {
    $e = error_get_last();
    fwrite(STDERR, "session_start failed: " . ($e ? $e['message'] : '?') . "\n");
    exit(2);
}
foreach ($args as $kv) {
    [$k, $v] = explode('=', $kv, 2);
    $_SESSION[$k] = $v;
}
if ($hold) {
    echo "locked\n";
    fflush(STDOUT);
    fgets(STDIN);
}
$view = $_SESSION;
ksort($view);
echo json_encode($view, JSON_FORCE_OBJECT), "\n";
if (!session_write_close()) {
    fwrite(STDERR, "session_write_close failed\n");
    exit(3);
}
