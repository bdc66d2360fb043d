<?php
// The original project's JavaScript example, in PHP, for the nginx + PHP-FPM
// baseline: it reads the request body as polyfaas hands it to a handler and
// answers what bench/handlers/original.py answers.
$body = file_get_contents('php://input');
header('Content-Type: application/json');
echo json_encode(['msg' => 'Hello from php-example']);
