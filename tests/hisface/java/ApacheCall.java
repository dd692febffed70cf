// What a Java HIS on Apache HttpClient 4.5 sees (Debian's libhttpclient-java and libhttpmime-java), written the
// way HIS code uses it: check for status 200, then read the entity.
//   json URL BODYFILE                   StringEntity(json, ContentType.APPLICATION_JSON): prints "<status> <body>"
//   multipart URL JSONFILE FILE NAME    9101: MultipartEntityBuilder, jsonStr text part and the file part
//   download URL BODYFILE OUTFILE       9102: the entity written to OUTFILE as it is; prints "<status> <type>"
// Anything but 200 prints "HTTP <status>", which is where such HIS code throws.
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.apache.http.HttpEntity;
import org.apache.http.client.methods.CloseableHttpResponse;
import org.apache.http.client.methods.HttpPost;
import org.apache.http.entity.ContentType;
import org.apache.http.entity.StringEntity;
import org.apache.http.entity.mime.MultipartEntityBuilder;
import org.apache.http.impl.client.CloseableHttpClient;
import org.apache.http.impl.client.HttpClients;
import org.apache.http.util.EntityUtils;

public class ApacheCall {
    public static void main(String[] args) throws Exception {
        HttpPost post = new HttpPost(args[1]);
        String json = Files.readString(Path.of(args[2]), StandardCharsets.UTF_8);
        HttpEntity entity;
        if (args[0].equals("multipart")) {
            entity = MultipartEntityBuilder.create()
                .addTextBody("jsonStr", json, ContentType.create("text/plain", StandardCharsets.UTF_8))
                .addBinaryBody("file", new File(args[3]), ContentType.APPLICATION_OCTET_STREAM, args[4])
                .build();
        } else {
            entity = new StringEntity(json, ContentType.APPLICATION_JSON);
        }
        post.setEntity(entity);
        try (CloseableHttpClient client = HttpClients.createDefault();
             CloseableHttpResponse resp = client.execute(post)) {
            int status = resp.getStatusLine().getStatusCode();
            if (status != 200) {
                System.out.println("HTTP " + status);
                return;
            }
            if (args[0].equals("download")) {
                Files.write(Path.of(args[3]), EntityUtils.toByteArray(resp.getEntity()));
                System.out.println(status + " " + resp.getEntity().getContentType().getValue());
            } else {
                System.out.println(status + " " + EntityUtils.toString(resp.getEntity(), StandardCharsets.UTF_8));
            }
        }
    }
}
