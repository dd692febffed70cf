// What a Java HIS sees when it posts an envelope, with the two HTTP stacks Java HIS code uses from the JDK:
// HttpURLConnection (HIS modules on JDK 8) and java.net.http.HttpClient (JDK 11+), both as configured by
// default. Prints one line: "<status> <body>" or "EXCEPTION <class>" when the stack throws before the body
// can be read (HttpURLConnection.getInputStream on a status of 400 or more).
// Run as: java HisCall.java urlconnection|httpclient URL BODYFILE [CONTENT-TYPE]
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

public class HisCall {
    public static void main(String[] args) throws Exception {
        byte[] body = Files.readAllBytes(Path.of(args[2]));
        String type = args.length > 3 ? args[3] : "application/json;charset=UTF-8";
        if (args[0].equals("urlconnection")) {
            HttpURLConnection c = (HttpURLConnection) new URL(args[1]).openConnection();
            c.setRequestMethod("POST");
            c.setDoOutput(true);
            c.setRequestProperty("Content-Type", type);
            c.getOutputStream().write(body);
            int status = c.getResponseCode();
            try (InputStream in = c.getInputStream()) {
                System.out.println(status + " " + new String(in.readAllBytes(), StandardCharsets.UTF_8));
            } catch (java.io.IOException e) {
                System.out.println("EXCEPTION " + e.getClass().getName());
            }
        } else {
            HttpClient client = HttpClient.newHttpClient();
            HttpRequest req = HttpRequest.newBuilder(URI.create(args[1]))
                .header("Content-Type", type)
                .POST(HttpRequest.BodyPublishers.ofByteArray(body))
                .build();
            HttpResponse<String> resp = client.send(req, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            System.out.println(resp.statusCode() + " " + resp.body());
        }
    }
}
